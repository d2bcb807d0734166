"""The alert store's tables (SQLAlchemy 2 typed ORM); Alembic migrations create them.

The console imports these classes: a rename here is a schema change and goes through a new
migration in `smsmon/store/migrations/versions/`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

CASE_STATUSES: Final = ("open", "acknowledged", "resolved", "false_positive")
"""Values of `alerts.case_status` and `case_events.{from,to}_status`."""

ROLES: Final = ("viewer", "handler")
"""Values of `users.role`: viewers read, handlers also change case status."""

CONSENT_DELETED: Final = "deleted"
"""`consent_events.status` of a null value (a tombstone) on the consent topic."""


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps `timestamptz`; SQLite has no time type, so the value is stored as UTC
    text (which sorts chronologically) and given back with `tzinfo=UTC`. Naive datetimes are
    refused: the store never guesses a timezone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: the alert store keeps timezone-aware UTC only")
        utc = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


NAMING: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with constraint names Alembic can address on every backend."""

    metadata = MetaData(naming_convention=NAMING)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Alert(Base):
    """One alert from `sms.alerts`, first occurrence of its `alert_id` wins."""

    __tablename__ = "alerts"

    alert_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    rule: Mapped[str] = mapped_column(String(100))
    severity: Mapped[str] = mapped_column(String(20))
    ts: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    detected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    event_id: Mapped[str] = mapped_column(String(200), default="")
    gateway: Mapped[str | None] = mapped_column(String(200))
    account: Mapped[str | None] = mapped_column(String(200))
    port: Mapped[str | None] = mapped_column(String(32))
    signature: Mapped[str | None] = mapped_column(String(200))
    enterprise: Mapped[str | None] = mapped_column(String(200))
    category: Mapped[str | None] = mapped_column(String(20))
    msisdn_hash: Mapped[str | None] = mapped_column(String(100))
    msisdn_masked: Mapped[str | None] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(Text, default="")
    subject_type: Mapped[str | None] = mapped_column(String(20))
    subject: Mapped[str | None] = mapped_column(String(200))
    window_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    window_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    observed: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    baseline: Mapped[float | None] = mapped_column(Float)
    schema_version: Mapped[int] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)
    src_partition: Mapped[int] = mapped_column(Integer)
    src_offset: Mapped[int] = mapped_column(BigInteger)
    stored_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    case_status: Mapped[str] = mapped_column(
        String(20), default="open", server_default=text("'open'")
    )

    __table_args__ = (
        CheckConstraint(_in("case_status", CASE_STATUSES), name="case_status"),
        Index(None, "ts"),
        Index(None, "rule", "ts"),
        Index(None, "severity", "ts"),
        Index(None, "enterprise", "ts"),
        Index(None, "signature", "ts"),
        Index(None, "port", "ts"),
        Index(None, "account", "ts"),
        Index(None, "gateway", "ts"),
        Index(None, "msisdn_hash", "ts"),
        Index(None, "case_status", "ts"),
        Index(None, "event_id"),
    )


class ConsentEvent(Base):
    """Every consent record seen on `sms.ref.consent`, the msisdn only hashed and masked."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    msisdn_hash: Mapped[str] = mapped_column(String(100))
    msisdn_masked: Mapped[str] = mapped_column(String(20))
    enterprise: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    ts: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    source: Mapped[str | None] = mapped_column(String(50))
    # how the consent was given and where its proof is kept (ConsentRecord, migration 0002)
    method: Mapped[str | None] = mapped_column(String(30))
    proof_ref: Mapped[str | None] = mapped_column(String(200))
    published_by_smsmon: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    src_partition: Mapped[int] = mapped_column(Integer)
    src_offset: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("src_partition", "src_offset"),
        Index(None, "msisdn_hash", "enterprise", "ts"),
    )


class Port(Base):
    """Latest registry state of one port code from `sms.ref.ports`."""

    __tablename__ = "ports"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    enterprise: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    record: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index(None, "enterprise"),)


class Signature(Base):
    """Latest registry state of one (normalised) signature from `sms.ref.signatures`."""

    __tablename__ = "signatures"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    enterprise: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    record: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index(None, "enterprise"),)


class CaseEvent(Base):
    """Audit trail of case decisions: one row per status change or note on an alert."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    alert_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("alerts.alert_id", ondelete="CASCADE")
    )
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint(_in("to_status", CASE_STATUSES), name="to_status"),
        Index(None, "alert_id", "at"),
    )


class User(Base):
    """A console user; `password_hash` is whatever the console's password hasher produces."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(100), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)


class StoreReject(Base):
    """A record the store could not use: where it is, why, and its size and SHA-256 only."""

    __tablename__ = "store_rejects"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(100))
    error: Mapped[str] = mapped_column(String(500), default="")
    value_size: Mapped[int | None] = mapped_column(Integer)
    value_sha256: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("topic", "partition", "offset"),
        Index(None, "at"),
    )
