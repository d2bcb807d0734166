"""Rule identifiers and severities: the stable names of the wire contract, defined once."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from smsmon.contract.models import Severity

ALERT_NAMESPACE = uuid.UUID("6f1c1c2e-3c1e-5b7e-9a51-7a3f0c2d9e11")
"""UUID5 namespace of alert ids (contract: alert_id = uuid5(ns, "rule|event_id"))."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule's stable id, its severity and a one-line statement for docs and alerts."""

    id: str
    severity: Severity
    summary: str


PORT_UNREGISTERED = Rule("port.unregistered", Severity.CRITICAL, "no registered port matches")
PORT_SUSPENDED = Rule("port.suspended", Severity.CRITICAL, "the port is suspended")
PORT_ACCOUNT = Rule("port.account", Severity.CRITICAL, "account not granted this port")
PORT_CATEGORY = Rule("port.category", Severity.MAJOR, "category not allowed on this port")
SIGNATURE_MISSING = Rule("signature.missing", Severity.MINOR, "the message has no signature")
SIGNATURE_UNREGISTERED = Rule(
    "signature.unregistered", Severity.CRITICAL, "signature unregistered or revoked"
)
SIGNATURE_SCOPE = Rule("signature.scope", Severity.MAJOR, "signature used outside its scope")
CONSENT_MISSING = Rule("consent.missing", Severity.MAJOR, "marketing without recorded consent")
CONSENT_REVOKED = Rule("consent.revoked", Severity.CRITICAL, "marketing after unsubscribe")
CONSENT_IMPLICIT = Rule(
    "consent.implicit", Severity.MAJOR, "marketing on a default or implied consent"
)

CONTENT_OPTOUT_MISSING = Rule(
    "content.optout_missing", Severity.MAJOR, "marketing without a way to refuse"
)
CONTENT_MISDECLARED = Rule(
    "content.misdeclared", Severity.MAJOR, "marketing declared as notification/verification"
)
TIME_QUIET_HOURS = Rule("time.quiet_hours", Severity.MINOR, "marketing outside allowed hours")

PER_MESSAGE_RULES: tuple[Rule, ...] = (
    PORT_UNREGISTERED,
    PORT_SUSPENDED,
    PORT_ACCOUNT,
    PORT_CATEGORY,
    SIGNATURE_MISSING,
    SIGNATURE_UNREGISTERED,
    SIGNATURE_SCOPE,
    CONSENT_MISSING,
    CONSENT_REVOKED,
    CONSENT_IMPLICIT,
    CONTENT_OPTOUT_MISSING,
    CONTENT_MISDECLARED,
    TIME_QUIET_HOURS,
)
RULES_BY_ID: dict[str, Rule] = {r.id: r for r in PER_MESSAGE_RULES}


_NAMESPACE_SHA1 = hashlib.sha1(ALERT_NAMESPACE.bytes)


def alert_id(rule_id: str, event_id: str) -> str:
    """Deterministic id of a per-message alert, so replays and repeats give the same id."""
    return uuid5_str(f"{rule_id}|{event_id}")


def uuid5_str(name: str) -> str:
    """`str(uuid.uuid5(ALERT_NAMESPACE, name))`, without building a UUID object.

    RFC 4122 version 5: the first 16 bytes of SHA-1(namespace || name) with the version
    nibble set to 5 and the variant bits to 10 (tests/unit/test_fast_paths.py compares it
    with the standard library).
    """
    h = _NAMESPACE_SHA1.copy()
    h.update(name.encode("utf-8"))
    x = h.hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


# The variant bits (10xx) applied to the first hex digit of the fourth group.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
