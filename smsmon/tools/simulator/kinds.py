"""What the simulator's records are made of: message categories, rule ids, the record shape."""

from __future__ import annotations

from typing import Any

CATEGORIES = ("marketing", "notification", "verification")
MKT, NTF, VER = 0, 1, 2
"""Indices into `CATEGORIES`, used for the per-category tables (mixes, profiles, routes)."""

Record = tuple[str, str, dict[str, Any]]
"""(topic kind `event` | `complaint`, Kafka key, value) as produced."""

# Aggregate rules an injected incident must raise (one ground-truth row per subject).
RULE_FLOOD = "recipient.flood"
RULE_SUBLET = "port.sublet"
RULE_COMPLAINTS = "complaint.rate"
RULE_SPIKE = "volume.spike"

# Per-message rules of the wire contract (smsmon/rules/catalog.py holds the same ids).
PORT_UNREGISTERED = "port.unregistered"
PORT_SUSPENDED = "port.suspended"
PORT_ACCOUNT = "port.account"
PORT_CATEGORY = "port.category"
SIGNATURE_MISSING = "signature.missing"
SIGNATURE_UNREGISTERED = "signature.unregistered"
SIGNATURE_SCOPE = "signature.scope"
CONSENT_MISSING = "consent.missing"
CONSENT_REVOKED = "consent.revoked"
CONSENT_IMPLICIT = "consent.implicit"
