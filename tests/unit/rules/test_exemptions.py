"""Exemptions suppress matching alerts until they expire, by rule and subject."""

from __future__ import annotations

import datetime as dt

import pytest

from smsmon.contract.canonical import MsisdnHasher
from smsmon.contract.models import Alert, Exemption, Severity
from smsmon.rules.exemptions import ExemptionBook

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 10, 20, 10, 0, tzinfo=dt.UTC)
HASH = MsisdnHasher(b"secret", "k1")


def alert(**kw: object) -> Alert:
    base: dict[str, object] = {
        "alert_id": "a",
        "rule": "port.sublet",
        "severity": Severity.CRITICAL,
        "ts": T0,
        "detected_at": T0,
        "port": "106900001234",
        "signature": "淘宝",
        "account": "acct-1",
        "enterprise": "E1",
    }
    base.update(kw)
    return Alert.model_validate(base)


def exemption(**kw: object) -> Exemption:
    base: dict[str, object] = {
        "exemption_id": "x1",
        "rule": "port.sublet",
        "subject_type": "port",
        "subject": "10690000",
        "expires_at": (T0 + dt.timedelta(days=1)).isoformat(),
        "reason": "platform port carries many brands",
        "approver": "ops-lead",
    }
    base.update(kw)
    return Exemption.model_validate(base)


def book(*items: Exemption) -> ExemptionBook:
    b = ExemptionBook(HASH)
    for e in items:
        b.put(e.exemption_id, e)
    return b


def test_port_exemption_covers_the_port_and_its_extensions() -> None:
    """A port exemption matches alerts on the registered code and on code+extension."""
    b = book(exemption())
    assert b.match(alert()) is not None
    assert b.match(alert(port="10690000")) is not None
    assert b.match(alert(port="10691111")) is None


def test_exemption_applies_only_to_its_rule_unless_wildcard() -> None:
    """Another rule on the same port is not suppressed; `*` suppresses every rule."""
    assert book(exemption()).match(alert(rule="port.account")) is None
    assert book(exemption(rule="*")).match(alert(rule="port.account")) is not None


def test_expired_exemption_stops_applying_by_itself() -> None:
    """An alert whose event time is at or after expires_at is no longer suppressed."""
    b = book(exemption())
    assert b.match(alert(ts=T0 + dt.timedelta(hours=23))) is not None
    assert b.match(alert(ts=T0 + dt.timedelta(days=1))) is None


def test_msisdn_exemption_matches_by_keyed_hash_for_a_test_number() -> None:
    """A test number named in the exemption matches alerts carrying its hash, not others."""
    b = book(exemption(rule="recipient.flood", subject_type="msisdn", subject="+86 139 0000 0001"))
    hit = alert(rule="recipient.flood", msisdn_hash=HASH("13900000001"))
    miss = alert(rule="recipient.flood", msisdn_hash=HASH("13900000002"))
    assert b.match(hit) is not None and b.match(miss) is None


def test_signature_enterprise_and_account_subjects_and_deletion() -> None:
    """Signature subjects are normalised; enterprise and account match; a tombstone deletes."""
    b = book(
        exemption(
            exemption_id="s", rule="signature.scope", subject_type="signature", subject="【 淘宝 】"
        ),
        exemption(
            exemption_id="e", rule="consent.missing", subject_type="enterprise", subject="E1"
        ),
        exemption(exemption_id="a", rule="port.account", subject_type="account", subject="acct-1"),
    )
    assert b.match(alert(rule="signature.scope")) is not None
    assert b.match(alert(rule="consent.missing")) is not None
    assert b.match(alert(rule="port.account")) is not None
    b.put("a", None)
    assert b.match(alert(rule="port.account")) is None
