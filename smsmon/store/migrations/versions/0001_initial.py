"""Initial alert store schema: alerts, consent events, registries, cases, users, rejects.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_CASE = "('open', 'acknowledged', 'resolved', 'false_positive')"


def _id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(200), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("ts", _TS, nullable=False),
        sa.Column("detected_at", _TS, nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("gateway", sa.String(200), nullable=True),
        sa.Column("account", sa.String(200), nullable=True),
        sa.Column("port", sa.String(32), nullable=True),
        sa.Column("signature", sa.String(200), nullable=True),
        sa.Column("enterprise", sa.String(200), nullable=True),
        sa.Column("category", sa.String(20), nullable=True),
        sa.Column("msisdn_hash", sa.String(100), nullable=True),
        sa.Column("msisdn_masked", sa.String(20), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("subject_type", sa.String(20), nullable=True),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("window_start", _TS, nullable=True),
        sa.Column("window_end", _TS, nullable=True),
        sa.Column("observed", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("baseline", sa.Float(), nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("src_partition", sa.Integer(), nullable=False),
        sa.Column("src_offset", sa.BigInteger(), nullable=False),
        sa.Column("stored_at", _TS, nullable=False),
        sa.Column("case_status", sa.String(20), server_default=sa.text("'open'"), nullable=False),
        sa.CheckConstraint(f"case_status IN {_CASE}", name=op.f("ck_alerts_case_status")),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alerts")),
    )
    for columns in (
        ("ts",),
        ("rule", "ts"),
        ("severity", "ts"),
        ("enterprise", "ts"),
        ("signature", "ts"),
        ("port", "ts"),
        ("account", "ts"),
        ("gateway", "ts"),
        ("msisdn_hash", "ts"),
        ("case_status", "ts"),
        ("event_id",),
    ):
        op.create_index(op.f(f"ix_alerts_{'_'.join(columns)}"), "alerts", list(columns))

    op.create_table(
        "consent_events",
        _id(),
        sa.Column("msisdn_hash", sa.String(100), nullable=False),
        sa.Column("msisdn_masked", sa.String(20), nullable=False),
        sa.Column("enterprise", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("ts", _TS, nullable=False),
        sa.Column("source", sa.String(50), nullable=True),
        sa.Column("published_by_smsmon", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("src_partition", sa.Integer(), nullable=False),
        sa.Column("src_offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
        sa.UniqueConstraint(
            "src_partition", "src_offset", name=op.f("uq_consent_events_src_partition_src_offset")
        ),
    )
    op.create_index(
        op.f("ix_consent_events_msisdn_hash_enterprise_ts"),
        "consent_events",
        ["msisdn_hash", "enterprise", "ts"],
    )

    for table, key_length in (("ports", 32), ("signatures", 200)):
        op.create_table(
            table,
            sa.Column("key", sa.String(key_length), nullable=False),
            sa.Column("enterprise", sa.String(200), nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("record", sa.Text(), nullable=False),
            sa.Column("updated_at", _TS, nullable=False),
            sa.PrimaryKeyConstraint("key", name=op.f(f"pk_{table}")),
        )
        op.create_index(op.f(f"ix_{table}_enterprise"), table, ["enterprise"])

    op.create_table(
        "case_events",
        _id(),
        sa.Column("alert_id", sa.String(200), nullable=False),
        sa.Column("from_status", sa.String(20), nullable=True),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.CheckConstraint(f"to_status IN {_CASE}", name=op.f("ck_case_events_to_status")),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.alert_id"],
            name=op.f("fk_case_events_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_events")),
    )
    op.create_index(op.f("ix_case_events_alert_id_at"), "case_events", ["alert_id", "at"])

    op.create_table(
        "users",
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(500), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.CheckConstraint("role IN ('viewer', 'handler')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_users")),
    )

    op.create_table(
        "store_rejects",
        _id(),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("error", sa.String(500), nullable=False),
        sa.Column("value_size", sa.Integer(), nullable=True),
        sa.Column("value_sha256", sa.String(64), nullable=True),
        sa.Column("at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_rejects")),
        sa.UniqueConstraint(
            "topic", "partition", "offset", name=op.f("uq_store_rejects_topic_partition_offset")
        ),
    )
    op.create_index(op.f("ix_store_rejects_at"), "store_rejects", ["at"])


def downgrade() -> None:
    for table in (
        "store_rejects",
        "users",
        "case_events",
        "signatures",
        "ports",
        "consent_events",
        "alerts",
    ):
        op.drop_table(table)
